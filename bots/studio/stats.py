"""The studio's stats pages."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
