//! depth-train (being built)
