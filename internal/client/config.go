package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ConfigEnv names the environment variable that overrides the default
// client config path.
const ConfigEnv = "RUNG_CONFIG"

// Config is the client config file `rung up` writes: where the server is
// and the token to use. It holds a secret and is written with mode 0600.
type Config struct {
	Server string `json:"server"`
	Token  string `json:"token"`
}

// DefaultConfigPath is $RUNG_CONFIG, or rung/config.json in the user's
// config directory (~/.config on Linux).
func DefaultConfigPath() (string, error) {
	if p := os.Getenv(ConfigEnv); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("client config: %w; set %s", err, ConfigEnv)
	}
	return filepath.Join(dir, "rung", "config.json"), nil
}

// maxConfig bounds a config file; real ones are ~200 bytes.
const maxConfig = 64 << 10

// LoadConfig reads a client config file strictly.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("client config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfig))
	if err != nil {
		return Config{}, fmt.Errorf("client config %s: %w", path, err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("client config %s: %w", path, err)
	}
	if c.Server == "" {
		return Config{}, fmt.Errorf("client config %s: no server", path)
	}
	return c, nil
}

// WriteConfig writes c to path with mode 0600, creating its directory
// (0700) if needed. The file is replaced atomically.
func WriteConfig(path string, c Config) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write client config: %w", err)
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(data, '\n'), 0o600)
}

// WriteFileAtomic writes data to a temporary file next to path with mode
// perm, syncs it and renames it over path.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, errors.Join(err, os.Remove(f.Name())))
	}
	return nil
}
