"""index unanswered messages

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 06:08:03.641680
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_status_open', ['status'], unique=False, sqlite_where=sa.text("status IN ('received', 'processing', 'failed')"), postgresql_where=sa.text("status IN ('received', 'processing', 'failed')"))



def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_status_open', sqlite_where=sa.text("status IN ('received', 'processing', 'failed')"), postgresql_where=sa.text("status IN ('received', 'processing', 'failed')"))

