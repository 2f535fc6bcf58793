"""What the tests share: sample events, event streams, stores that fail, the template's functions on moto, a local
stack with the API in it, and purchase histories for the LTV model."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
