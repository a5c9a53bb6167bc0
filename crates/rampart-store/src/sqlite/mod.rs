//! The embedded SQLite backend: all stores on one database file in `data_dir`.
