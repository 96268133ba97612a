"""The storage layer: engines, the dialect differences, table definitions, bulk SQL."""
