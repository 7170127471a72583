"""Test and benchmark support that the product does not ship (synthetic networks)."""
