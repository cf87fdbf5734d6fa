// Command yamlbench measures sigs.k8s.io/yaml on a multi-document YAML corpus, the way Kubernetes
// tools read manifests: split the stream on "---" lines, then yaml.Unmarshal each document into
// interface{} (YAMLToJSON followed by encoding/json, what kubectl's and Argo CD's decoders do).
//
//	yamlbench -runs 3 corpus.yaml    prints "... cpu-MB/s <per CPU-second> MB/s <wall>"
//	yamlbench -tojson file.yaml      prints each document as JSON (test goldens)
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"
)

// splitDocuments splits a YAML stream at lines that start with "---", like
// k8s.io/apimachinery's YAMLReader.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	start := 0
	for i := 0; i < len(data); {
		end := bytes.IndexByte(data[i:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += i + 1
		}
		if bytes.HasPrefix(data[i:end], []byte("---")) {
			if i > start {
				docs = append(docs, data[start:i])
			}
			start = end
		}
		i = end
	}
	if start < len(data) {
		docs = append(docs, data[start:])
	}
	return docs
}

func parseAll(data []byte) (int, error) {
	n := 0
	for _, doc := range splitDocuments(data) {
		var obj interface{}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return n, err
		}
		if obj != nil {
			n++
		}
	}
	return n, nil
}

// cpuTime is the user and system time of the whole process (the garbage collector's threads
// included), for MB per CPU-second.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	runs := flag.Int("runs", 3, "timed runs; the best is reported")
	toJSON := flag.Bool("tojson", false, "print each document as JSON instead of timing")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: yamlbench [-runs N] [-tojson] FILE")
		os.Exit(2)
	}
	data, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *toJSON {
		for _, doc := range splitDocuments(data) {
			j, err := yaml.YAMLToJSON(doc)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			if string(j) != "null" {
				fmt.Println(string(j))
			}
		}
		return
	}
	best := time.Duration(1<<63 - 1)
	bestCPU := time.Duration(1<<63 - 1)
	docs := 0
	for r := 0; r < *runs; r++ {
		cpu := cpuTime()
		start := time.Now()
		n, err := parseAll(data)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if d := time.Since(start); d < best {
			best = d
		}
		if d := cpuTime() - cpu; d < bestCPU {
			bestCPU = d
		}
		docs = n
	}
	mb := float64(len(data)) / 1e6
	fmt.Printf("docs %d bytes %d best_seconds %.3f best_cpu_seconds %.3f cpu-MB/s %.1f MB/s %.1f\n",
		docs, len(data), best.Seconds(), bestCPU.Seconds(), mb/bestCPU.Seconds(), mb/best.Seconds())
}
