from recbole_tiger.model.sequential_recommender import TIGER

__all__ = ["TIGER"]
