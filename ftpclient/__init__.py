"""ftpclient package."""
