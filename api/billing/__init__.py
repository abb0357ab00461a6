"""Client billing: what a client paid, what the platform kept, what came back, what is held."""
