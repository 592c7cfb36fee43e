"""Importing existing members from a CSV file: reading the file by line (`csvfile`) and sending each
row as a delivery (`importer`)."""
