"""The damoc terminal app (Textual). Talks to the library only through its public API and events."""
