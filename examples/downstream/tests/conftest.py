# The backend harness of portable_nn: --backend/--device, the backend and xp fixtures, skip markers.
pytest_plugins = ["portable_nn.testing"]
