package strategies

import (
	"fmt"
	"math"
)

// This file holds the value checks that the strategies' Validate
// methods share. Validate is the one judge of values: the Caddyfile
// parsers check syntax only and build the JSON config, which Validate
// then checks, so a JSON config gets every check a Caddyfile gets.

// checkRange checks an optional number setting against [0, upper].
func checkRange(name string, v *float64, upper float64) error {
	if v != nil && !(*v >= 0 && *v <= upper) { // NaN fails both
		return fmt.Errorf("%s must be from 0 to %g, got %g", name, upper, *v)
	}
	return nil
}

// checkWeight checks an optional weight setting: a finite number, at
// least 0.
func checkWeight(name string, v *float64) error {
	if v != nil && !(*v >= 0 && *v <= math.MaxFloat64) { // NaN fails both
		return fmt.Errorf("%s must be a finite number of at least 0, got %g", name, *v)
	}
	return nil
}

// checkNotNegative checks an integer setting that may not be negative.
func checkNotNegative(name string, v int) error {
	if v < 0 {
		return fmt.Errorf("%s must not be negative, got %d", name, v)
	}
	return nil
}
