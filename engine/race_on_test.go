//go:build race

package engine

// raceEnabled: the race detector slows the engine ~10x, so the largest
// brute-force tests check a sample under it (all of it without -race).
const raceEnabled = true
