//go:build nodev

package main

import (
	"context"
	"errors"
	"io"
)

// runDev reports that development mode was left out of this build (go build -tags nodev), so that a production
// binary carries no development authorization server.
func runDev(context.Context, map[string]string, io.Writer, io.Writer) error {
	return errors.New("this gateway was built without development mode (-tags nodev)")
}
