"""MovieLens readers, normalised on-disk format, side features, splits and offline evaluation."""
