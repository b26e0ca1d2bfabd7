"""Device state changes: a device going online or offline (its online status, its goodbye,
its last will), for the device page's status history.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-12
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'device_state_changes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('site', sa.String(length=63), nullable=False),
        sa.Column('device', sa.String(length=63), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('status_at', sa.DateTime(), nullable=False),
        sa.Column('connection_lost', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_device_state_changes')),
        sa.UniqueConstraint('site', 'device', 'state', 'status_at',
                            name='uq_device_state_changes_site_device_state_status_at'),
    )
    op.create_index('ix_device_state_changes_site_device_at', 'device_state_changes',
                    ['site', 'device', 'at'])


def downgrade() -> None:
    op.drop_index('ix_device_state_changes_site_device_at',
                  table_name='device_state_changes')
    op.drop_table('device_state_changes')
