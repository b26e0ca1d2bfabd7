"""Alerts: the alerts themselves (one unresolved per rule and subject), their delivery
outbox, and whether a device's offline state came from its last will (a lost connection).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_UNRESOLVED = sa.text('resolved_at IS NULL')


def upgrade() -> None:
    with op.batch_alter_table('devices') as batch:
        batch.add_column(sa.Column('connection_lost', sa.Boolean(), nullable=True))
    op.create_table(
        'alerts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('rule', sa.String(length=32), nullable=False),
        sa.Column('subject', sa.String(length=128), nullable=False),
        sa.Column('site', sa.String(length=63), nullable=False),
        sa.Column('device', sa.String(length=63), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('summary', sa.String(length=300), nullable=False),
        sa.Column('value', sa.Double(), nullable=True),
        sa.Column('threshold', sa.Double(), nullable=True),
        sa.Column('opened_at', sa.DateTime(), nullable=False),
        sa.Column('acknowledged_at', sa.DateTime(), nullable=True),
        sa.Column('acknowledged_by', sa.String(length=64), nullable=True),
        sa.Column('resolved_at', sa.DateTime(), nullable=True),
        sa.Column('resolved_by', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    )
    op.create_index('uq_alerts_unresolved', 'alerts', ['rule', 'subject'], unique=True,
                    sqlite_where=_UNRESOLVED, postgresql_where=_UNRESOLVED)
    op.create_index('ix_alerts_opened_at', 'alerts', ['opened_at'])
    op.create_table(
        'alert_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('alert_id', sa.Integer(), nullable=False),
        sa.Column('event', sa.String(length=16), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('idempotency_key', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.String(length=300), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('delivered_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'],
                                name=op.f('fk_alert_deliveries_alert_id_alerts'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_deliveries')),
        sa.UniqueConstraint('alert_id', 'event', 'channel',
                            name='uq_alert_deliveries_alert_id_event_channel'),
        sa.UniqueConstraint('idempotency_key',
                            name=op.f('uq_alert_deliveries_idempotency_key')),
    )
    op.create_index('ix_alert_deliveries_state_next_attempt_at', 'alert_deliveries',
                    ['state', 'next_attempt_at'])


def downgrade() -> None:
    op.drop_index('ix_alert_deliveries_state_next_attempt_at', table_name='alert_deliveries')
    op.drop_table('alert_deliveries')
    op.drop_index('ix_alerts_opened_at', table_name='alerts')
    op.drop_index('uq_alerts_unresolved', table_name='alerts')
    op.drop_table('alerts')
    with op.batch_alter_table('devices') as batch:
        batch.drop_column('connection_lost')
