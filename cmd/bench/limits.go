package main

import "context"

// Set-up (e): the gateway with a rate limit per user on (in memory), high enough that the bench never reaches it, so
// that what is measured is the cost of counting every request.
func init() {
	variants = append(variants, variant{name: "e gateway + limits (memory)", env: func(context.Context, string) ([]string, func(), error) {
		return []string{"GATEWAY_RATE_LIMIT_USER=1000000/s,burst=1000000"}, func() {}, nil
	}})
}
