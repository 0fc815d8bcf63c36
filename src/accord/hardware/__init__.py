"""Simulated device hardware: pure models of cameras, cabinets and sensors."""
