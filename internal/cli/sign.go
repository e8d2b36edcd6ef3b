package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

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
			"A tag is resolved once; the signature covers the digest printed. KEY is an unencrypted PKCS#8 or\n" +
			"SEC1 PEM key (see `rung image keygen`).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return withCode(ExitInvalid, errors.New("sign: --key is required"))
			}
			signer, err := sign.LoadPrivateKey(key)
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
	cmd.Flags().StringVar(&key, "key", "", "private key file (PEM)")
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
// as cosign uses, PREFIX.key (unencrypted PKCS#8, mode 0600) and PREFIX.pub.
func newImageKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen PREFIX",
		Short: "Make a signing key pair: PREFIX.key (keep it in CI's secrets) and PREFIX.pub (for signedBy)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			der, err := x509.MarshalPKCS8PrivateKey(k)
			if err != nil {
				return err
			}
			pub, err := sign.MarshalPublicKey(k.Public())
			if err != nil {
				return err
			}
			priv := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
			keyFile, pubFile := args[0]+".key", args[0]+".pub"
			f, err := os.OpenFile(keyFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if _, err := f.Write(priv); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if err := os.WriteFile(pubFile, pub, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s\n", keyFile, pubFile)
			return nil
		},
	}
}
