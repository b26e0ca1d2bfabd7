"""Device health: the telemetry history of status messages and the last model update.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('telemetry_samples',
    sa.Column('site', sa.String(length=63), nullable=False),
    sa.Column('device', sa.String(length=63), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('gpu_load_pct', sa.Double(), nullable=True),
    sa.Column('cpu_load_pct', sa.Double(), nullable=True),
    sa.Column('temp_max_c', sa.Double(), nullable=True),
    sa.Column('power_mw', sa.Integer(), nullable=True),
    sa.Column('ram_used_mb', sa.Integer(), nullable=True),
    sa.Column('ram_total_mb', sa.Integer(), nullable=True),
    sa.Column('swap_used_mb', sa.Integer(), nullable=True),
    sa.Column('fps', sa.Double(), nullable=False),
    sa.Column('frames_processed', sa.BigInteger(), nullable=False),
    sa.Column('frames_rejected', sa.BigInteger(), nullable=False),
    sa.Column('frame_errors', sa.BigInteger(), nullable=False),
    sa.Column('queue_length', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('site', 'device', 'at', name=op.f('pk_telemetry_samples'))
    )
    op.create_index('ix_telemetry_samples_received_at', 'telemetry_samples', ['received_at'])
    with op.batch_alter_table('devices') as batch:
        batch.add_column(sa.Column('telemetry_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('update_version', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('update_outcome', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('update_reason', sa.String(length=300), nullable=True))
        batch.add_column(sa.Column('update_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('update_model_sha256', sa.String(length=64),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('devices') as batch:
        for column in ('update_model_sha256', 'update_at', 'update_reason', 'update_outcome',
                       'update_version', 'telemetry_at'):
            batch.drop_column(column)
    op.drop_index('ix_telemetry_samples_received_at', table_name='telemetry_samples')
    op.drop_table('telemetry_samples')
