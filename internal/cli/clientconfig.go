package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/client"
)

// controlPlaneCommands are the commands of the control plane: `up` and
// the commands that talk to it. root.go lists them.
func controlPlaneCommands() []*cobra.Command {
	return []*cobra.Command{
		newUpCmd(), newApplyCmd(), newDeleteCmd(), newGetCmd(), newDescribeCmd(), newLogsCmd(), newExecCmd(), newScaleCmd(), newRolloutCmd(), newTokenCmd(), newSecretCmd(), newAgentCmd(), newLeaderCmd(),
	}
}

// TokenEnv is the environment variable that may hold the API token.
const TokenEnv = "RUNG_TOKEN"

// clientFlags says how to reach the API: --server and --token (or
// --token-file, or $RUNG_TOKEN) override the client config that `rung up`
// writes ($RUNG_CONFIG or ~/.config/rung/config.json).
type clientFlags struct {
	server    string
	token     string
	tokenFile string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", "", "API address, http://HOST:PORT (default: the client config that rung up writes)")
	fl.StringVar(&f.token, "token", "", "API bearer token (default: $"+TokenEnv+", or the client config)")
	fl.StringVar(&f.tokenFile, "token-file", "", "read the API token from this file, e.g. DATA-DIR/admin.token")
}

// client builds the API client from flags, environment and config file.
func (f *clientFlags) client() (*client.Client, error) {
	server, token := f.server, f.token
	if token == "" && f.tokenFile != "" {
		data, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, withCode(ExitInvalid, fmt.Errorf("--token-file: %w", err))
		}
		token = strings.TrimSpace(string(data))
	}
	if token == "" {
		token = os.Getenv(TokenEnv)
	}
	if server == "" || token == "" {
		path, err := client.DefaultConfigPath()
		if err != nil {
			return nil, err
		}
		cfg, err := client.LoadConfig(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, withCode(ExitInvalid, fmt.Errorf("no API to talk to: run `rung up` (it writes %s), or pass --server and --token", path))
		case err != nil:
			return nil, withCode(ExitInvalid, err)
		}
		if server == "" {
			server = cfg.Server
		}
		if token == "" {
			token = cfg.Token
		}
	}
	c, err := client.New(server, token)
	if err != nil {
		return nil, withCode(ExitInvalid, err)
	}
	return c, nil
}
