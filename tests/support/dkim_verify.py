"""Verifies a message's DKIM signature with dkimpy, an implementation
independent of followupd's, against a TXT record given on the command line
instead of looked up in DNS.

    python3 dkim_verify.py MESSAGE.eml 'v=DKIM1; k=rsa; p=...'

Prints "pass" and exits 0, or prints "fail" and exits 1.
"""
import sys

import dkim


def main():
    message = open(sys.argv[1], "rb").read()
    record = sys.argv[2].encode()

    def dnsfunc(name, timeout=5):
        return record

    ok = dkim.verify(message, dnsfunc=dnsfunc)
    print("pass" if ok else "fail")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
