"""Importers: runs trained elsewhere, written as grokscope run directories that every command opens."""
