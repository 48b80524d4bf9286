"""Blend stage: quota mixing of ranked, popular and new items."""
