"""Where the bundled default model and demo samples live (inside the installed package)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL = ASSETS / "tokstep-mini"
DEMO_DIR = ASSETS / "demo"
DEMO_QA = DEMO_DIR / "qa.json"
DEMO_TEXT = DEMO_DIR / "text.txt"
DEMO_CHAT = DEMO_DIR / "chat.json"
