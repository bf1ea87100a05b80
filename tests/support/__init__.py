"""Test-side support code for portier: private Dovecot backends, throwaway
certificates, a scripted fake backend and a portier process harness."""
