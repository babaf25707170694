"""jobs: leases and heartbeats, progress stages, who asked, retries; cancelled is a state

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 07:45:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requester', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('stage', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('worker', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('max_attempts', sa.Integer(), nullable=False, server_default='3'))
        batch_op.create_index('ix_jobs_requester_status', ['requester', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_requester_status')
        batch_op.drop_column('max_attempts')
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('worker')
        batch_op.drop_column('stage')
        batch_op.drop_column('requester')
