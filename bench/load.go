package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// result is what one load run measured.
type result struct {
	requests, failures int
	elapsed            time.Duration
	latencies          []time.Duration
	statuses           map[int]int
}

func (r result) rate() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	l := slices.Clone(r.latencies)
	slices.Sort(l)
	return l[min(len(l)-1, int(p*float64(len(l))))]
}

func (r result) String() string {
	return fmt.Sprintf("%d requests, %.1f/s, p50 %s, p99 %s, statuses %v",
		r.requests, r.rate(), r.percentile(0.50).Round(10*time.Microsecond), r.percentile(0.99).Round(10*time.Microsecond), r.statuses)
}

// load sends requests from concurrency workers until duration has passed
// or total requests were sent (whichever is set), counting as failures
// the answers whose status is not want.
func load(concurrency int, duration time.Duration, total int, want int, newReq func() *http.Request) result {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency, TLSClientConfig: clientTLS()}}
	ctx, cancel := context.WithTimeout(context.Background(), max(duration, 10*time.Minute))
	defer cancel()
	deadline := time.Now().Add(duration)
	var (
		mu   sync.Mutex
		res  = result{statuses: map[int]int{}}
		sent int
		wg   sync.WaitGroup
	)
	next := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if total > 0 {
			if sent >= total {
				return false
			}
			sent++
			return true
		}
		return time.Now().Before(deadline)
	}
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next() {
				req := newReq().WithContext(ctx)
				t0 := time.Now()
				resp, err := client.Do(req)
				status := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				d := time.Since(t0)
				mu.Lock()
				res.requests++
				res.latencies = append(res.latencies, d)
				res.statuses[status]++
				if status != want {
					res.failures++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	client.CloseIdleConnections()
	return res
}
