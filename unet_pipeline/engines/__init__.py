"""Engines behind one interface (base.py); each module imports its library only when instantiated."""
