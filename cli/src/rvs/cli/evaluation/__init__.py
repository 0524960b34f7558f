"""`rvs eval`: search quality measured through rvs's own pipeline and search path."""
