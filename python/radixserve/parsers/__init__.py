"""Output parsers used by serving_chat: tool calls (one detector per format) and reasoning."""
