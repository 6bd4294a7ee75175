"""Realtime: Supabase Realtime's Phoenix-channel protocol (postgres_changes, broadcast, presence)."""
