package main

import (
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"goswan/config"
	"goswan/ctl"
)

func checkConfigFlags(e *env, fs *pflag.FlagSet) {
	fs.StringVar(&e.secretsFile, "secretsfile", defaultSecretsFile, "the ipsec.secrets `FILE`(s), a glob")
	fs.StringVar(&e.ipsecDir, "ipsecdir", defaultIPsecDir, "the `DIR` relative key file names in ipsec.secrets are under")
}

// cmdCheckConfig validates ipsec.conf and ipsec.secrets without a daemon.
// Every error and warning goes to stderr, one a line; on success a summary
// goes to stdout. It exits 1 on any error.
func cmdCheckConfig(e *env) int {
	nerr, nwarn := 0, 0
	diags := func(err error, warns []*config.Diagnostic) {
		for _, w := range warns {
			fmt.Fprintf(e.stderr, "warning: %v\n", w)
		}
		nwarn += len(warns)
		if err == nil {
			return
		}
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, d := range errs {
				fmt.Fprintln(e.stderr, d)
			}
			nerr += len(errs)
			return
		}
		fmt.Fprintln(e.stderr, err)
		nerr++
	}

	cfg, err := config.Load(e.config)
	var cfgWarns []*config.Diagnostic
	if cfg != nil {
		cfgWarns = cfg.Warnings
	}
	diags(err, cfgWarns)

	sec, err := config.LoadSecrets(e.secretsFile, e.ipsecDir)
	var secWarns []*config.Diagnostic
	if sec != nil {
		secWarns = sec.Warnings
	}
	diags(err, secWarns)

	if nerr > 0 {
		fmt.Fprintf(e.stderr, "ipsec checkconfig: %s, %s\n", plural(nerr, "error"), plural(nwarn, "warning"))
		return ctl.StatusFailed
	}
	nconns, nsecrets := 0, 0
	if cfg != nil {
		nconns = len(cfg.Conns)
	}
	if sec != nil {
		nsecrets = len(sec.Entries)
	}
	fmt.Fprintf(e.stdout, "%s: %s; %s: %s; %s: OK\n",
		e.config, plural(nconns, "conn"), e.secretsFile, plural(nsecrets, "secret"), plural(nwarn, "warning"))
	return ctl.StatusOK
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}
