"""The Image API's behaviour, independent of HTTP: for each method a function that takes the
caller, the request Struct and the store, and returns the contract's result or raises the
contract's error; who may do what (authorization.py); the list query language and page tokens.
The REST gateway is an adapter over it (parse, call, encode)."""
