"""What shows an experiment to a person: the terminal view (radas watch), the report page."""
