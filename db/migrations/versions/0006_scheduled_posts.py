"""posts: the scheduled-post calendar (slots, approval, publishing leases, message ids)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 16:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chat_id', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('zone', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('slot_key', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('job_id', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('worker', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_try_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('parts_sent', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('sending_part', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('message_ids', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('reactions', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('approved_by', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('notified', sa.Boolean(), nullable=False, server_default=sa.text('false')))
        batch_op.add_column(sa.Column('created_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint('uq_posts_persona_id_slot_key', ['persona_id', 'slot_key'])


def downgrade() -> None:
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.drop_constraint('uq_posts_persona_id_slot_key', type_='unique')
        for col in ('updated_at', 'created_at', 'notified', 'approved_by', 'reactions', 'message_ids', 'sending_part',
                    'parts_sent', 'next_try_at', 'attempts', 'lease_until', 'worker', 'job_id', 'slot_key', 'zone',
                    'chat_id'):
            batch_op.drop_column(col)
