"""Small shared helpers with no litvision imports: atomic writes, user-error types, optional dependencies, class weights."""
