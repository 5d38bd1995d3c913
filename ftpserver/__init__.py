"""ftpserver package."""
