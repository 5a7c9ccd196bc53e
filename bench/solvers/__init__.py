"""Restoration machinery that method plugins build on (solvers, recipes, tilers); below the plugins, above the architectures."""
