"""Poison messages: rejected messages keep the payload when it broke no schema rule (a
device clock outside the window, a result id stored with other content, a row the database
refused), and the per-day frame totals are 64-bit (a 32-bit sum would refuse a device's
results once its day's sessions add up to 2**31 frames).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_TOTALS = ('skipped_frames', 'processed_frames')


def upgrade() -> None:
    with op.batch_alter_table('rejected_messages') as batch:
        batch.add_column(sa.Column('payload', sa.Text(), nullable=True))
    with op.batch_alter_table('result_counts') as batch:
        for column in _TOTALS:
            batch.alter_column(column, type_=sa.BigInteger(), existing_type=sa.Integer(),
                               existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('result_counts') as batch:
        for column in _TOTALS:
            batch.alter_column(column, type_=sa.Integer(), existing_type=sa.BigInteger(),
                               existing_nullable=False)
    with op.batch_alter_table('rejected_messages') as batch:
        batch.drop_column('payload')
