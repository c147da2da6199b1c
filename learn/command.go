package learn

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "llm-route",
		Usage: "eval|train [flags]",
		Short: "Offline routing evaluation and training for llm_route",
		Long: `
Offline tools of the llm_route module, run without a server.

  caddy llm-route eval --data FILE (--strategy JSON|NAME | --config FILE --route NAME) [--decisions OUT]
  caddy llm-route eval --simulate --data FILE --strategy '{"name":"adaptive"}' [--registry TRAIN]
  caddy llm-route train --data FILE[,FILE...] --out MODEL.json [--seed N]

Data files are JSON lines: routing-eval records {"id","prompt","scores":{model:0..1},"costs":{model:USD}}
or feedback records {"id","prompt","model","score","cost"}. See README.md, "Learning routers".
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(evalCommand(), trainCommand())
		},
	})
}

// subjectHalf keeps the train or test half of recs split by subject
// (MMLU), or all of them for "".
func subjectHalf(recs []Record, half string) ([]Record, error) {
	switch half {
	case "":
		return recs, nil
	case "train", "test":
		train, test, subjects := SplitSubjects(recs)
		fmt.Fprintf(os.Stderr, "held-out subjects (%d): %s\n", len(subjects), strings.Join(subjects, " "))
		if half == "train" {
			return train, nil
		}
		return test, nil
	}
	return nil, fmt.Errorf("--subject-half: want train or test, got %q", half)
}

func readFiles(list string) ([]Record, error) {
	var all []Record
	for _, p := range strings.Split(list, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		recs, err := ReadFile(p)
		if err != nil {
			return nil, err
		}
		all = append(all, recs...)
	}
	if len(all) == 0 {
		return nil, errors.New("--data: no file given")
	}
	return all, nil
}

func trainCommand() *cobra.Command {
	var data, out, half string
	var opt TrainOptions
	c := &cobra.Command{
		Use:   "train",
		Short: "Fit the classifier strategy's model file",
		Long: `Fits the classifier strategy's model file to routing data: for each model, the
probability that it answers a prompt well, by logistic regression over hashed word n-grams
and prompt-shape features. Pure Go, single-threaded, deterministic for a seed.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if data == "" || out == "" {
				return errors.New("--data and --out are required")
			}
			if err := opt.check(); err != nil {
				return err
			}
			recs, err := readFiles(data)
			if err != nil {
				return err
			}
			if recs, err = subjectHalf(recs, half); err != nil {
				return err
			}
			m, err := Train(recs, opt)
			if err != nil {
				return err
			}
			b, err := json.Marshal(m)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "trained on %d prompts, %d models; wrote %s\n", len(recs), len(m.Models), out)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&data, "data", "", "training data: JSONL files, comma-separated")
	f.StringVar(&out, "out", "", "model file to write")
	f.StringVar(&half, "subject-half", "", "split the data by subject (MMLU ids) and train on the 'train' half")
	f.Int64Var(&opt.Seed, "seed", 1, "seed of the example order")
	f.IntVar(&opt.Bits, "bits", 0, "log2 of the hashed text features (default 16)")
	f.IntVar(&opt.Epochs, "epochs", 0, "passes over the data (default 6)")
	f.Float64Var(&opt.Rate, "rate", 0, "AdaGrad learning rate (default 0.02)")
	f.Float64Var(&opt.L2Shared, "l2-shared", 0, "L2 penalty of the shared weights (default 1e-4)")
	f.Float64Var(&opt.L2Own, "l2-own", 0, "L2 penalty of each model's own weights (default 1e-3)")
	f.IntVar(&opt.Folds, "folds", 0, "calibrate the predictions out of fold with this many folds (by subject for MMLU ids); default none")
	return c
}

// check refuses training options out of range; zero means the default.
func (o TrainOptions) check() error {
	switch {
	case o.Epochs < 0:
		return fmt.Errorf("--epochs: want a positive number, got %d", o.Epochs)
	case o.Rate < 0 || o.L2Shared < 0 || o.L2Own < 0:
		return errors.New("--rate, --l2-shared and --l2-own must not be negative")
	case o.Folds == 1 || o.Folds < 0:
		return fmt.Errorf("--folds: want 2 or more (or none), got %d", o.Folds)
	}
	return nil
}

func evalCommand() *cobra.Command {
	var data, strategy, config, adapter, route, registry, decisions, half string
	var steps int
	var simulate bool
	c := &cobra.Command{
		Use:   "eval",
		Short: "Replay a route's strategy over routing data and sweep its knob",
		Long: `Replays a strategy offline over routing data and prints its knob against mean
quality, mean cost (the data's USD, else the share of calls to the strongest model) and the
share of calls to each model; APGR and CPT for two models, AIQ and dominance for more.
The strategy comes from --strategy (a JSON config or a module name), or from the route
--route of the llm_route handler in --config. Dataset models map to registry models by
name: the handler's models with --config, else models derived from --registry (routing
data, e.g. a train split) or from --data itself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if data == "" {
				return errors.New("--data is required")
			}
			switch {
			case steps < 1:
				return fmt.Errorf("--steps: want 1 or more, got %d", steps)
			case strategy != "" && route != "":
				return errors.New("give --strategy or --route, not both")
			case registry != "" && config != "":
				return errors.New("--registry derives the models without --config; give one of them")
			case simulate && decisions != "":
				return errors.New("--decisions writes the knob sweep's decisions, which --simulate does not make")
			}
			recs, err := readFiles(data)
			if err != nil {
				return err
			}
			if err := checkCosts(recs); err != nil {
				return fmt.Errorf("--data: %v", err)
			}
			all := recs
			if recs, err = subjectHalf(recs, half); err != nil {
				return err
			}
			opt := EvalOptions{Steps: steps}
			if simulate && half == "test" && registry == "" && config == "" {
				// The simulated strategy's priors come from the train
				// subjects, never from the subjects it is scored on.
				train, _, _ := SplitSubjects(all)
				opt.Registry = RegistryFromData(train)
			}
			if config != "" {
				h, err := loadHandler(config, adapter)
				if err != nil {
					return err
				}
				opt.Registry = h.Models
				if route != "" {
					rt := h.route(route)
					if rt == nil {
						return fmt.Errorf("--route: no route %q in %s", route, config)
					}
					opt.Strategy = rt.Strategy
					opt.Registry = h.targetModels(rt)
				}
			} else if route != "" {
				return errors.New("--route needs --config")
			}
			if strategy != "" {
				opt.Strategy = strategyJSON(strategy)
			}
			if len(opt.Strategy) == 0 {
				return errors.New("give --strategy, or --config and --route")
			}
			if opt.Registry == nil {
				src := recs
				if registry != "" {
					if src, err = readFiles(registry); err != nil {
						return err
					}
					if err := checkCosts(src); err != nil {
						return fmt.Errorf("--registry: %v", err)
					}
				}
				opt.Registry = RegistryFromData(src)
			}
			if simulate {
				rep, err := Simulate(recs, SimOptions{Strategy: opt.Strategy, Registry: opt.Registry})
				if err != nil {
					return err
				}
				rep.Print(cmd.OutOrStdout())
				return nil
			}
			if decisions != "" {
				f, err := os.Create(decisions)
				if err != nil {
					return err
				}
				defer f.Close()
				opt.Decisions = f
			}
			rep, err := Eval(recs, opt)
			if err != nil {
				return err
			}
			rep.Print(cmd.OutOrStdout())
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&data, "data", "", "routing data to replay: JSONL files, comma-separated")
	f.StringVar(&strategy, "strategy", "", `strategy config, e.g. '{"name":"classifier","model_file":"m.json"}', or a module name`)
	f.StringVar(&config, "config", "", "Caddy config whose llm_route handler gives the models (and --route)")
	f.StringVar(&adapter, "adapter", "", "config adapter of --config (default: caddyfile for a Caddyfile)")
	f.StringVar(&route, "route", "", "route of --config whose strategy and targets to replay")
	f.StringVar(&registry, "registry", "", "routing data to derive model prices and qualities from, without --config")
	f.StringVar(&decisions, "decisions", "", `write every decision to this file, {"id","knob","model"} a line`)
	f.StringVar(&half, "subject-half", "", "split the data by subject (MMLU ids) and replay the 'test' (or 'train') half")
	f.IntVar(&steps, "steps", 40, "intervals of the knob sweep")
	f.BoolVar(&simulate, "simulate", false, "stream the data in order through a learning strategy (adaptive), which learns each pick's score as feedback; report running quality and cost against the best fixed model")
	return c
}

// handlerConfig is the part of an llm_route handler's JSON config that
// eval reads.
type handlerConfig struct {
	Models []RegistryModel `json:"models"`
	Routes []routeConfig   `json:"routes"`
}

type routeConfig struct {
	Name     string                   `json:"name"`
	Targets  []struct{ Model string } `json:"targets"`
	Strategy json.RawMessage          `json:"strategy"`
}

func (h *handlerConfig) route(name string) *routeConfig {
	for i := range h.Routes {
		if h.Routes[i].Name == name {
			return &h.Routes[i]
		}
	}
	return nil
}

// targetModels are the registry models that rt targets, in its order.
func (h *handlerConfig) targetModels(rt *routeConfig) []RegistryModel {
	var out []RegistryModel
	for _, t := range rt.Targets {
		for _, m := range h.Models {
			if m.Name == t.Model {
				out = append(out, m)
			}
		}
	}
	if len(rt.Strategy) == 0 {
		rt.Strategy = json.RawMessage(`{"name":"fallback"}`)
	}
	return out
}

// loadHandler reads a Caddy config (JSON, or adapted) and returns its
// first llm_route handler.
func loadHandler(path, adapter string) (*handlerConfig, error) {
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if adapter == "" && (strings.HasPrefix(strings.ToLower(filepath.Base(path)), "caddyfile") || filepath.Ext(path) == ".caddyfile") {
		adapter = "caddyfile"
	}
	if adapter != "" {
		a := caddyconfig.GetAdapter(adapter)
		if a == nil {
			return nil, fmt.Errorf("unknown config adapter %q", adapter)
		}
		if body, _, err = a.Adapt(body, map[string]any{"filename": path}); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
	}
	var root any
	if err := json.Unmarshal(body, &root); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	var found json.RawMessage
	var walk func(v any)
	walk = func(v any) {
		if found != nil {
			return
		}
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "llm_route" {
				found, _ = json.Marshal(v)
				return
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(root)
	if found == nil {
		return nil, fmt.Errorf("%s: no llm_route handler", path)
	}
	var h handlerConfig
	if err := json.Unmarshal(found, &h); err != nil {
		return nil, fmt.Errorf("%s: llm_route: %v", path, err)
	}
	return &h, nil
}
