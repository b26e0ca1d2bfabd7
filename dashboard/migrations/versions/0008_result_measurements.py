"""Muscle measurements: a result's optional ``measurements`` (the session medians of muscle
thickness in mm and px, pennation angle and echo intensity, their IQR, the frames measured and
the aponeurosis model), as nullable columns of ``results``. Rows stored before stay null: the
dashboard did not keep the field, so nothing can be filled in.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-14
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_QUANTITIES = ('muscle_thickness_mm', 'muscle_thickness_px', 'pennation_deg', 'echo_intensity')


def _columns() -> list[sa.Column]:
    """New objects on every call: a Column belongs to the one table it is added to."""
    return [*(sa.Column(name, sa.Double(), nullable=True) for name in _QUANTITIES),
            *(sa.Column(f'{name}_iqr', sa.Double(), nullable=True) for name in _QUANTITIES),
            sa.Column('frames_measured', sa.Integer(), nullable=True),
            sa.Column('measure_model_name', sa.String(length=64), nullable=True),
            sa.Column('measure_model_sha256', sa.String(length=64), nullable=True)]


def upgrade() -> None:
    with op.batch_alter_table('results') as batch:
        for column in _columns():
            batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table('results') as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
