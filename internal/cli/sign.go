package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"rung.dev/rung/internal/sign"
)

// newImageSignCmd is `rung image sign REF --key KEY`, for CI: sign an image
// in its registry in cosign's format.
func newImageSignCmd() *cobra.Command {
	var (
		key      string
		insecure bool
	)
	cmd := &cobra.Command{
		Use:   "sign REF --key KEY",
		Short: "Sign an image in its registry (cosign format, offline key, for CI)",
		Long: "Sign REF (HOST/REPO:TAG or HOST/REPO@DIGEST) with a private key and push the signature next to\n" +
			"it as cosign does (tag sha256-HEX.sig), so that `cosign verify --key` and rung admission accept it.\n" +
			"A tag is resolved once; the signature covers the digest printed.\n\n" +
			"KEY is a cosign.key from `cosign generate-key-pair` or `rung image keygen` (ENCRYPTED SIGSTORE\n" +
			"PRIVATE KEY, or ENCRYPTED COSIGN PRIVATE KEY from older cosign), or an unencrypted PKCS#8, SEC1\n" +
			"or PKCS#1 PEM key. The password of an encrypted key is $COSIGN_PASSWORD, as for cosign (set it\n" +
			"from CI's secrets; an empty value is an empty password); without it rung asks on the terminal,\n" +
			"and fails if there is none.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return withCode(ExitInvalid, errors.New("sign: --key is required"))
			}
			signer, err := sign.LoadPrivateKey(key, cosignPassword(cmd.InOrStdin(), cmd.ErrOrStderr(), false))
			if err != nil {
				return withCode(ExitInvalid, err)
			}
			f := checkFlags{insecure: insecure}
			nopts, ropts := f.remoteOptions(cmd.Context())
			ref, err := name.ParseReference(args[0], nopts...)
			if err != nil {
				return withCode(ExitInvalid, fmt.Errorf("sign %q: %w", args[0], err))
			}
			d, err := sign.Sign(cmd.Context(), ref, signer, ropts...)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s\n", d)
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "private key file (PEM; cosign.key); its password is $COSIGN_PASSWORD")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP to a registry that is not on loopback")
	return cmd
}

// newImageVerifyCmd is `rung image verify REF --key PUB`: print the digest
// that a trusted key signed, the one to run.
func newImageVerifyCmd() *cobra.Command {
	var (
		keys     []string
		insecure bool
	)
	cmd := &cobra.Command{
		Use:   "verify REF --key PUB…",
		Short: "Verify an image's cosign signature offline with public keys; print the digest to run",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(keys) == 0 {
				return withCode(ExitInvalid, errors.New("verify: --key is required"))
			}
			var trusted []sign.Key
			for _, p := range keys {
				k, err := sign.LoadPublicKey(p)
				if err != nil {
					return withCode(ExitInvalid, err)
				}
				trusted = append(trusted, k)
			}
			f := checkFlags{insecure: insecure}
			nopts, ropts := f.remoteOptions(cmd.Context())
			ref, err := name.ParseReference(args[0], nopts...)
			if err != nil {
				return withCode(ExitInvalid, fmt.Errorf("verify %q: %w", args[0], err))
			}
			res, err := sign.Verify(cmd.Context(), ref, trusted, ropts...)
			if err != nil {
				return withCode(ExitRejected, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s signed by %s\n", res.Digest, res.Key.Name)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&keys, "key", nil, "trusted public key file (PEM; repeatable)")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP to a registry that is not on loopback")
	return cmd
}

// newImageKeygenCmd is `rung image keygen PREFIX`: an ECDSA P-256 key pair
// as `cosign generate-key-pair` writes it, PREFIX.key (encrypted with
// $COSIGN_PASSWORD, mode 0600) and PREFIX.pub.
func newImageKeygenCmd() *cobra.Command {
	var unencrypted bool
	cmd := &cobra.Command{
		Use:   "keygen PREFIX",
		Short: "Make a signing key pair: PREFIX.key (keep it in CI's secrets) and PREFIX.pub (for signedBy)",
		Long: "Write an ECDSA P-256 key pair as `cosign generate-key-pair` does: PREFIX.key, an ENCRYPTED\n" +
			"SIGSTORE PRIVATE KEY (mode 0600) that cosign and `rung image sign` read, and PREFIX.pub, the PEM\n" +
			"public key a tenant lists in spec.images.signedBy. The password is $COSIGN_PASSWORD (an empty\n" +
			"value is allowed, as with cosign); without it rung asks twice on the terminal, and fails if there\n" +
			"is none. --unencrypted writes a plain PKCS#8 key instead, for secret stores that keep a key but\n" +
			"no password. Existing files are never overwritten.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keyFile, pubFile := args[0]+".key", args[0]+".pub"
			// Refuse before asking for a password or writing anything, so
			// that a refused run leaves no half of a new pair behind.
			for _, p := range []string{keyFile, pubFile} {
				if _, err := os.Lstat(p); err == nil {
					return withCode(ExitInvalid, fmt.Errorf("keygen: %s already exists; not overwriting it", p))
				}
			}
			var priv, pub []byte
			var err error
			if unencrypted {
				priv, pub, err = sign.GenerateUnencryptedKeyPair()
			} else {
				var pw []byte
				pw, err = cosignPassword(cmd.InOrStdin(), cmd.ErrOrStderr(), true)(keyFile)
				if err != nil {
					return withCode(ExitInvalid, fmt.Errorf("keygen: %w; or use --unencrypted", err))
				}
				priv, pub, err = sign.GenerateKeyPair(pw)
			}
			if err != nil {
				return err
			}
			if err := writeNew(keyFile, priv, 0o600); err != nil {
				return err
			}
			if err := writeNew(pubFile, pub, 0o644); err != nil {
				os.Remove(keyFile) // a private key without its public half is no use
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s\n", keyFile, pubFile)
			return nil
		},
	}
	cmd.Flags().BoolVar(&unencrypted, "unencrypted", false, "write PREFIX.key as an unencrypted PKCS#8 key (no password)")
	return cmd
}

// writeNew writes a file that must not exist yet: O_EXCL closes the race
// between keygen's existence check and the write.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("keygen: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("keygen: %w", err)
	}
	return nil
}

// passwordEnv is the variable cosign reads a key's password from; rung
// uses the same so that one CI secret serves both tools.
const passwordEnv = "COSIGN_PASSWORD"

// cosignPassword is cosign's rule for a key's password: $COSIGN_PASSWORD
// if set, even to "" (an empty password); else a prompt without echo when
// in is a terminal (twice if confirm, for a new key); else an error that
// says how to give it, since CI has no one to ask. Unlike cosign, rung does
// not read a piped password from stdin: a CI job that forgot the variable
// would otherwise use whatever stdin holds, often nothing, as the password.
func cosignPassword(in io.Reader, prompt io.Writer, confirm bool) sign.Password {
	return func(keyFile string) ([]byte, error) {
		if pw, ok := os.LookupEnv(passwordEnv); ok {
			return []byte(pw), nil
		}
		f, ok := in.(*os.File)
		if !ok || !term.IsTerminal(int(f.Fd())) {
			return nil, fmt.Errorf("%s is not set and stdin is not a terminal to ask on: set %s to the password of %s "+
				"(%s= for an empty one)", passwordEnv, passwordEnv, keyFile, passwordEnv)
		}
		ask := func(question string) ([]byte, error) {
			fmt.Fprint(prompt, question)
			pw, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(prompt)
			if err != nil {
				return nil, fmt.Errorf("read password for %s: %w", keyFile, err)
			}
			return pw, nil
		}
		pw, err := ask("Enter password for private key " + keyFile + ": ")
		if err != nil || !confirm {
			return pw, err
		}
		again, err := ask("Enter password for private key again: ")
		if err != nil {
			return nil, err
		}
		if string(pw) != string(again) {
			return nil, errors.New("passwords do not match")
		}
		return pw, nil
	}
}
