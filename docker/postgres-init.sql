-- Runs once, on a fresh data volume (POSTGRES_DB makes "temporal").
CREATE DATABASE temporal_visibility;
