"""Local stand-ins for the Discord and Telegram servers, and helpers for the bot's tests."""
