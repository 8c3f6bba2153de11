"""The bundled demo web service (spofless.demo.app), for examples, tests and drills."""
