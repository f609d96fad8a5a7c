"""jwktool."""
