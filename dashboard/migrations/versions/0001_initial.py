"""Initial schema: results, result counts, devices, rejected messages, users, API keys, web
sessions, follow-ups.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('key_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_sha256', name=op.f('uq_api_keys_key_sha256')),
    sa.UniqueConstraint('name', name=op.f('uq_api_keys_name'))
    )
    op.create_table('devices',
    sa.Column('site', sa.String(length=63), nullable=False),
    sa.Column('device', sa.String(length=63), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('status_at', sa.DateTime(), nullable=True),
    sa.Column('state_since', sa.DateTime(), nullable=True),
    sa.Column('app_version', sa.String(length=64), nullable=True),
    sa.Column('model_name', sa.String(length=64), nullable=True),
    sa.Column('model_sha256', sa.String(length=64), nullable=True),
    sa.Column('queued_results', sa.Integer(), nullable=True),
    sa.Column('fps', sa.Double(), nullable=True),
    sa.Column('live_at', sa.DateTime(), nullable=True),
    sa.Column('last_result_at', sa.DateTime(), nullable=True),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('site', 'device', name=op.f('pk_devices'))
    )
    op.create_table('rejected_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('topic', sa.String(length=300), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('first_seen', sa.DateTime(), nullable=False),
    sa.Column('last_seen', sa.DateTime(), nullable=False),
    sa.Column('times_seen', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rejected_messages')),
    sa.UniqueConstraint('digest', name=op.f('uq_rejected_messages_digest'))
    )
    op.create_table('result_counts',
    sa.Column('site', sa.String(length=63), nullable=False),
    sa.Column('device', sa.String(length=63), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('model_name', sa.String(length=64), nullable=False),
    sa.Column('model_sha256', sa.String(length=64), nullable=False),
    sa.Column('results', sa.Integer(), nullable=False),
    sa.Column('positive', sa.Integer(), nullable=False),
    sa.Column('negative', sa.Integer(), nullable=False),
    sa.Column('rescans', sa.Integer(), nullable=False),
    sa.Column('skipped_frames', sa.Integer(), nullable=False),
    sa.Column('processed_frames', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('site', 'device', 'day', 'model_name', 'model_sha256',
                            name=op.f('pk_result_counts'))
    )
    op.create_index('ix_result_counts_day_site', 'result_counts', ['day', 'site'])
    op.create_table('results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('result_id', sa.String(length=36), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('site', sa.String(length=63), nullable=False),
    sa.Column('device', sa.String(length=63), nullable=False),
    sa.Column('session_id', sa.String(length=36), nullable=False),
    sa.Column('screening_id', sa.String(length=32), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('probability', sa.Double(), nullable=True),
    sa.Column('score_logit', sa.Double(), nullable=True),
    sa.Column('threshold', sa.Double(), nullable=False),
    sa.Column('aggregation', sa.String(length=32), nullable=False),
    sa.Column('uncertainty', sa.JSON(), nullable=True),
    sa.Column('usable_frames', sa.Integer(), nullable=False),
    sa.Column('processed_frames', sa.Integer(), nullable=False),
    sa.Column('min_usable_frames', sa.Integer(), nullable=False),
    sa.Column('skipped_frames', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.JSON(), nullable=False),
    sa.Column('model_name', sa.String(length=64), nullable=False),
    sa.Column('model_sha256', sa.String(length=64), nullable=False),
    sa.Column('app_version', sa.String(length=64), nullable=False),
    sa.Column('stored_at', sa.DateTime(), nullable=False),
    sa.Column('stored_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_results')),
    sa.UniqueConstraint('result_id', name=op.f('uq_results_result_id'))
    )
    op.create_index('ix_results_day_site', 'results', ['day', 'site'])
    op.create_index('ix_results_decision_day', 'results', ['decision', 'day'])
    op.create_index('ix_results_site_device_day', 'results', ['site', 'device', 'day'])
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('name', name=op.f('uq_users_name'))
    )
    op.create_table('follow_ups',
    sa.Column('result_id', sa.String(length=36), nullable=False),
    sa.Column('by_user', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['result_id'], ['results.result_id'],
                            name=op.f('fk_follow_ups_result_id_results'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('result_id', name=op.f('pk_follow_ups'))
    )
    op.create_table('web_sessions',
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                            name=op.f('fk_web_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_sha256', name=op.f('pk_web_sessions'))
    )


def downgrade() -> None:
    op.drop_table('web_sessions')
    op.drop_table('follow_ups')
    op.drop_table('users')
    op.drop_table('results')
    op.drop_table('result_counts')
    op.drop_table('rejected_messages')
    op.drop_table('devices')
    op.drop_table('api_keys')
