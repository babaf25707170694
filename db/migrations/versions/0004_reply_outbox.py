"""replies go through an outbox: due -> sending (a lease) -> delivered | failed | dropped

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 07:10:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

DUE = "status IN ('due', 'sending')"


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('parts_done', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_try_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_messages_due', ['status', 'next_try_at'], unique=False,
                              sqlite_where=sa.text(DUE), postgresql_where=sa.text(DUE))
    # replies stored before the outbox were sent when they were stored
    op.execute("UPDATE messages SET status = 'delivered' WHERE role = 'assistant' AND status = 'sent'")


def downgrade() -> None:
    op.execute("UPDATE messages SET status = 'sent' WHERE role = 'assistant' AND status <> 'sent'")
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_due', sqlite_where=sa.text(DUE), postgresql_where=sa.text(DUE))
        batch_op.drop_column('delivered_at')
        batch_op.drop_column('next_try_at')
        batch_op.drop_column('parts_done')
        batch_op.drop_column('attempts')
