// Anchor: the store library always has at least this file, whichever halves are built.
