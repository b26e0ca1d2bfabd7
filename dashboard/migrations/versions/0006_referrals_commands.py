"""Referral workflow and device commands: a referral's outcome, its history of actions and
notes (referral_events), and the commands staff sent to devices (device_commands).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_OUTCOME_COLUMNS = ('outcome', 'outcome_by', 'outcome_at')


def upgrade() -> None:
    with op.batch_alter_table('follow_ups') as batch:
        batch.add_column(sa.Column('outcome', sa.String(length=24), nullable=True))
        batch.add_column(sa.Column('outcome_by', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('outcome_at', sa.DateTime(), nullable=True))
    op.create_table('referral_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('result_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('text', sa.String(length=500), nullable=True),
    sa.Column('by_user', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['result_id'], ['results.result_id'],
                            name=op.f('fk_referral_events_result_id_results'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referral_events'))
    )
    op.create_index('ix_referral_events_result_id', 'referral_events', ['result_id'])
    op.create_table('device_commands',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site', sa.String(length=63), nullable=False),
    sa.Column('device', sa.String(length=63), nullable=False),
    sa.Column('command', sa.String(length=16), nullable=False),
    sa.Column('screening_id', sa.String(length=32), nullable=True),
    sa.Column('url', sa.String(length=512), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('by_user', sa.String(length=64), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=False),
    sa.Column('accepted', sa.Boolean(), nullable=False),
    sa.Column('detail', sa.String(length=300), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_device_commands'))
    )
    op.create_index('ix_device_commands_site_device_sent_at', 'device_commands',
                    ['site', 'device', 'sent_at'])


def downgrade() -> None:
    op.drop_index('ix_device_commands_site_device_sent_at', table_name='device_commands')
    op.drop_table('device_commands')
    op.drop_index('ix_referral_events_result_id', table_name='referral_events')
    op.drop_table('referral_events')
    with op.batch_alter_table('follow_ups') as batch:
        for column in reversed(_OUTCOME_COLUMNS):
            batch.drop_column(column)
