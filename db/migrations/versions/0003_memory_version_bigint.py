"""memory versions are 64-bit (they start from a microsecond timestamp)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 20:45:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('relationships', schema=None) as batch_op:
        batch_op.alter_column('memory_version', existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    op.execute("UPDATE relationships SET memory_version = 0")  # recall caches reload
    with op.batch_alter_table('relationships', schema=None) as batch_op:
        batch_op.alter_column('memory_version', existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False)
