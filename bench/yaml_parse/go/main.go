// Command yamlbench measures sigs.k8s.io/yaml on a multi-document YAML corpus, the way Kubernetes
// tools read manifests: split the stream on "---" lines, then yaml.Unmarshal each document into
// interface{} (YAMLToJSON followed by encoding/json, what kubectl's and Argo CD's decoders do).
//
//	yamlbench -runs 3 corpus.yaml    prints "MB/s <value>"
//	yamlbench -tojson file.yaml      prints each document as JSON (test goldens)
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
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
	docs := 0
	for r := 0; r < *runs; r++ {
		start := time.Now()
		n, err := parseAll(data)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if d := time.Since(start); d < best {
			best = d
		}
		docs = n
	}
	mbps := float64(len(data)) / 1e6 / best.Seconds()
	fmt.Printf("docs %d bytes %d best_seconds %.3f MB/s %.1f\n", docs, len(data), best.Seconds(), mbps)
}
